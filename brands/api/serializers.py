from rest_framework import serializers

from brands.models import Brand, Service


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
