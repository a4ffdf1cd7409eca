"""Reference data of the demo: brands, their catalogues and tariffs, names and reasons."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

CURRENCY = "RUB"
HISTORY_DAYS = 183

BRANDS: list[dict[str, Any]] = [
    {
        "code": "energo",
        "name": "ГорЭнергоСбыт",
        "legal_name": "АО «Городская энергосбытовая компания»",
        "inn_body": "770412345",
        "kpp": "770401001",
        "ogrn_body": "102770012345",
        "address": "119334, г. Москва, ул. Вавилова, д. 9",
        "bank_name": "ПАО Сбербанк",
        "bank_bik": "044525225",
        "bank_account": "40702810938000012345",
        "bank_correspondent_account": "30101810400000000225",
        "invoice_prefix": "GES",
        "default_vat_rate": Decimal("20.00"),
    },
    {
        "code": "telecom",
        "name": "СвязьТелеком",
        "legal_name": "ПАО «СвязьТелеком»",
        "inn_body": "780598765",
        "kpp": "780501001",
        "ogrn_body": "102780054321",
        "address": "191186, г. Санкт-Петербург, ул. Большая Морская, д. 18",
        "bank_name": "АО «Альфа-Банк»",
        "bank_bik": "044525593",
        "bank_account": "40702810401300098765",
        "bank_correspondent_account": "30101810200000000593",
        "invoice_prefix": "STK",
        "default_vat_rate": Decimal("20.00"),
    },
    {
        "code": "food",
        "name": "ВкусДоставка",
        "legal_name": "ООО «Вкусная доставка»",
        "inn_body": "773055512",
        "kpp": "773001001",
        "ogrn_body": "117774655512",
        "address": "121099, г. Москва, Смоленская пл., д. 3",
        "bank_name": "АО «ТБанк»",
        "bank_bik": "044525974",
        "bank_account": "40702810210000555123",
        "bank_correspondent_account": "30101810145250000974",
        "invoice_prefix": "VKD",
        "default_vat_rate": Decimal("10.00"),
    },
]

# brand code -> [(code, name, unit, VAT %)]
SERVICES: dict[str, list[tuple[str, str, str, str]]] = {
    "energo": [
        ("electricity", "Электроэнергия", "kWh", "20.00"),
        ("cold_water", "Холодное водоснабжение", "m3", "20.00"),
        ("heating", "Отопление", "Gcal", "20.00"),
        ("capital_repair", "Взнос на капитальный ремонт", "m2", "0.00"),
    ],
    "telecom": [
        ("mobile_plan", "Тариф «Мобильный»", "month", "20.00"),
        ("home_internet", "Домашний интернет", "month", "20.00"),
        ("roaming_data", "Интернет в роуминге", "MB", "20.00"),
        ("corporate_plan", "Корпоративный тариф", "month", "20.00"),
    ],
    "food": [
        ("meals", "Готовые блюда", "order", "10.00"),
        ("groceries", "Продукты", "order", "10.00"),
        ("drinks", "Напитки", "order", "20.00"),
        ("delivery", "Доставка", "order", "20.00"),
    ],
}

BLOCK_REASONS = [
    "Заявление клиента об утере карты",
    "Подозрение на мошенничество",
    "Задолженность более 90 дней",
    "Запрос службы безопасности",
]
CLOSE_REASON = "Договор расторгнут по заявлению клиента"
EMPLOYEE_BLOCK_REASON = "Сотрудник уволен"
PAYMENT_REVERSAL_REASON = "Платёж зачислен ошибочно"
DEBIT_REVERSAL_REASON = "Отмена заказа по обращению клиента"
ACCRUAL_REVERSAL_REASON = "Начисление по ошибочным показаниям"
ADJUSTMENT_REASONS = [
    "Компенсация за перебой в обслуживании",
    "Перерасчёт по обращению клиента",
    "Корректировка после сверки с банком",
]
EMAIL_DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "rambler.ru", "bk.ru", "list.ru"]
REGIONS = ["77", "78", "50", "66", "16", "52", "54", "23", "61", "63", "74", "02"]
LEGAL_FORMS = {
    "ООО": "Общество с ограниченной ответственностью",
    "АО": "Акционерное общество",
    "ЗАО": "Закрытое акционерное общество",
    "ОАО": "Открытое акционерное общество",
    "ПАО": "Публичное акционерное общество",
    "НПО": "Научно-производственное объединение",
    "РАО": "Российское акционерное общество",
}
_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
        "я": "ya",
    }
)  # fmt: skip


def translit(text: str) -> str:
    return text.lower().translate(_TRANSLIT)


def ogrn_complete(body: str) -> str:
    """OGRN (13 digits) or OGRNIP (15 digits) from its body, with the check digit."""
    if len(body) == 12:
        return body + str(int(body) % 11 % 10)
    if len(body) == 14:
        return body + str(int(body) % 13 % 10)
    raise ValueError("OGRN body must have 12 or 14 digits")


# service code -> [(plan, kind, price or tiers)]: versions valid over the whole history.
TARIFFS: dict[str, list[tuple[str, str, Any]]] = {
    "electricity": [
        ("standard", "tiered", [
            {"up_to": "150", "price": "5.80"}, {"up_to": None, "price": "6.43"},
        ]),
        ("business", "per_unit", "8.91"),
    ],
    "cold_water": [("standard", "per_unit", "52.10")],
    "heating": [("standard", "per_unit", "2950.00")],
    "capital_repair": [("standard", "per_unit", "12.50")],
    "mobile_plan": [("s", "flat", "450.00"), ("m", "flat", "650.00"), ("l", "flat", "890.00")],
    "home_internet": [("standard", "flat", "550.00")],
    "roaming_data": [("standard", "per_unit", "0.99")],
    "corporate_plan": [
        ("b5", "flat", "5000.00"), ("b9", "flat", "9000.00"), ("b15", "flat", "15000.00"),
        ("b25", "flat", "25000.00"),
    ],
}  # fmt: skip
HEATING_MONTHS = (1, 2, 3, 4, 10, 11, 12)
