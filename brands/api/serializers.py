from django.core.validators import RegexValidator
from rest_framework import serializers

from brands.models import Brand, Service
from core.api.fields import IdField, StrictCharField
from core.api.serializers import StrictModelSerializer


class BrandSerializer(serializers.ModelSerializer):
    class Meta:
        model = Brand
        fields = ["id", "code", "name", "legal_name", "tax_id"]
        read_only_fields = fields


class ServiceSerializer(serializers.ModelSerializer):
    vat_rate = serializers.DecimalField(
        max_digits=5, decimal_places=2, read_only=True, help_text='Percent, e.g. "20.00".'
    )

    class Meta:
        model = Service
        fields = ["id", "code", "name", "brand", "unit", "vat_rate"]
        read_only_fields = fields


class ServiceWriteSerializer(StrictModelSerializer):
    brand = IdField()
    code = StrictCharField(max_length=64)
    name = StrictCharField(max_length=200)
    unit = StrictCharField(max_length=32, required=False)
    vat_rate = StrictCharField(
        max_length=6,
        required=False,
        validators=[RegexValidator(r"^\d{1,3}(?:\.\d{1,2})?$", 'A percentage such as "20.00".')],
        help_text='A percentage string: "20.00" for 20%. Default: the brand\'s rate.',
    )

    class Meta:
        model = Service
        fields = ["brand", "code", "name", "unit", "vat_rate"]


class ServiceUpdateSerializer(ServiceWriteSerializer):
    brand = None
    code = StrictCharField(max_length=64, required=False)
    name = StrictCharField(max_length=200, required=False)
    is_active = serializers.BooleanField(required=False)

    class Meta:
        model = Service
        fields = ["code", "name", "unit", "vat_rate", "is_active"]
