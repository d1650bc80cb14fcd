"""The order's contract: its fields, declared once in FIELDS, and the validation of a new order.

Everything that names the order's fields takes them from FIELDS:

    NewOrder                 the validated order (a dataclass made from FIELDS, in their order)
    validate_order()         the POST /orders body -> NewOrder, or ValidationFailed naming every bad field
    events.OnNewOrder        the event: an envelope around the same fields (app/events.py)
    writemodel/orders.py     the outbox payload, and the columns and parameters of the order's SQL
    readmodel/store.py       the projection's columns and parameters, the query responses' JSON
    api/openapi.py           the NewOrder, Order and Customer schemas of the OpenAPI document

Adding a field: one entry here, plus the columns in both stores' migrations.

Decisions (README, "API"):
* unknown fields are rejected (a typo such as "quantitiy" must not pass silently);
* strings are stored verbatim (no trimming), must be valid Unicode without
  control characters (tab and newlines allowed in `description`), and are
  limited in characters as the columns are;
* email is lower-cased: it is the customer's identity, and case must not make
  two customers of one address;
* quantity is a whole number from 1 to 10000 (6.0 is 6, as JSON Schema says; 6.5, "6" and
  true are rejected).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, make_dataclass
from dataclasses import field as _dataclass_field

# The patterns are published in the OpenAPI document (app/api/openapi.py), so a client or a
# fuzzer knows exactly what is accepted.  They avoid \s, whose meaning differs between Python
# and ECMA-262 (JSON Schema) regexes.  Text: no C0/C1 control characters (tab and newlines
# allowed in a description) and one visible character.
_TEXT = r"[^\x00-\x1f\x7f-\x9f]"
_MULTILINE = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_VISIBLE = r"[^\x00-\x20\x7f-\x9f]"
_EMAIL_PART = r"[^@\x00-\x20\x7f-\x9f]"
EMAIL_PATTERN = rf"^{_EMAIL_PART}{{1,64}}@{_EMAIL_PART}+\.{_EMAIL_PART}+$"
NAME_PATTERN = rf"^{_TEXT}*{_VISIBLE}{_TEXT}*$"
DESCRIPTION_PATTERN = rf"^{_MULTILINE}*{_VISIBLE}{_MULTILINE}*$"
_NO_CONTROL = "must contain a visible character and no control characters"


@dataclass(frozen=True)
class Field:
    """One field of the order.  `type` is str (text) or int (a whole number)."""
    name: str                      # the JSON name (request body, event, query responses), also the attribute name
    type: type
    column: str                    # its column in the read model's tables and the write model's customers table
    orders_column: str = ""        # its column in the write model's orders table, where that differs
    required: bool = True
    min_length: int = 1            # text: characters (1: "must not be empty")
    max_length: int = 0            # text: characters, as the columns hold
    pattern: str = ""              # text: the whole value must match (anchored: it is published as is)
    mismatch: str = ""             # text: the error when it does not
    minimum: int = 0               # number: the inclusive range
    maximum: int = 0
    lower: bool = False            # text: lower-cased before it is stored
    customer: bool = False         # the customer's, not the order's: the customers row holds it too
    identity: bool = False         # the customer's identity (the customers table's key)
    doc: str = ""                  # a description in the OpenAPI document
    example: object = None         # its value in the OpenAPI document's example

    @property
    def text(self) -> bool:
        return self.type is str

    @property
    def write_column(self) -> str:
        """Its column in the write model's orders table."""
        return self.orders_column or self.column


FIELDS: tuple[Field, ...] = (
    Field("description", str, "description", max_length=500, pattern=DESCRIPTION_PATTERN, mismatch=_NO_CONTROL,
          example="repellendus aut et eaque"),
    Field("quantity", int, "quantity", minimum=1, maximum=10_000, example=6),
    Field("email", str, "email", orders_column="customer_email", max_length=254, pattern=EMAIL_PATTERN,
          mismatch="must be an email address such as name@example.com", lower=True, customer=True, identity=True,
          doc="an email address; stored lower-cased", example="alexanne.glover@augusta.biz"),
    Field("firstName", str, "first_name", max_length=100, pattern=NAME_PATTERN, mismatch=_NO_CONTROL, customer=True,
          example="Alexanne"),
    Field("lastName", str, "last_name", max_length=100, pattern=NAME_PATTERN, mismatch=_NO_CONTROL, customer=True,
          example="Glover"),
)
BY_NAME = {f.name: f for f in FIELDS}
CUSTOMER_FIELDS = tuple(f for f in FIELDS if f.customer)       # the customer's, its identity first
ORDER_FIELDS = tuple(f for f in FIELDS if not f.customer)      # the order's own


def _check_declaration() -> None:
    """FIELDS is consistent: one identity, first among the customer's fields; bounds that mean something."""
    identities = [f.name for f in FIELDS if f.identity]
    if not CUSTOMER_FIELDS or identities != [CUSTOMER_FIELDS[0].name]:
        raise AssertionError(f"the customer needs exactly one identity, first of its fields: {identities}")
    for f in FIELDS:
        if f.type not in (str, int):
            raise AssertionError(f"{f.name}: a field is text (str) or a whole number (int)")
        if f.text and not (f.max_length >= f.min_length >= 0 and f.max_length and f.pattern.startswith("^")
                           and f.pattern.endswith("$") and f.mismatch):
            raise AssertionError(f"{f.name}: text needs a length range, an anchored pattern and its message")
        if not f.text and not f.minimum <= f.maximum:
            raise AssertionError(f"{f.name}: a number needs a range")


_check_declaration()

NewOrder = make_dataclass(
    "NewOrder",
    [(f.name, f.type) if f.required else (f.name, f.type | None, _dataclass_field(default=None, kw_only=True))
     for f in FIELDS],
    frozen=True,
    namespace={"__module__": __name__,
               "__doc__": "A valid order, as validate_order() returns it: the fields of FIELDS, in their order."},
)


class ValidationFailed(ValueError):
    def __init__(self, fields: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


_FULL = {f.name: re.compile(f.pattern[1:-1]) for f in FIELDS if f.text}
_NAMES = frozenset(BY_NAME)
# The order in which bad fields are reported (the `fields` of a 422): text first, then numbers.
_CHECK_ORDER = tuple(f for f in FIELDS if f.text) + tuple(f for f in FIELDS if not f.text)


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _check_text(f: Field, value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if len(value) < f.min_length:
        return "must not be empty" if f.min_length == 1 else f"must be at least {f.min_length} characters"
    if len(value) > f.max_length:
        return f"must be at most {f.max_length} characters"
    if not _is_unicode(value):
        return "must be valid Unicode (no lone surrogates)"
    if not _FULL[f.name].fullmatch(value):
        return f.mismatch
    return None


def _check_number(f: Field, value: object) -> tuple[str | None, object]:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)  # JSON has one number type: 6.0 is the integer 6, as in JSON Schema
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer", value
    if not f.minimum <= value <= f.maximum:
        return f"must be between {f.minimum} and {f.maximum}", value
    return None, value


def validate_order(body: object) -> NewOrder:
    """Return a NewOrder or raise ValidationFailed naming every bad field."""
    if not isinstance(body, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    for f in FIELDS:
        if f.required and f.name not in body:
            errors[f.name] = "is required"
    for name in sorted(set(body) - _NAMES):
        errors[name] = "unknown field"
    values = {}
    for f in _CHECK_ORDER:
        if f.name not in body:
            continue
        if f.text:
            problem, value = _check_text(f, body[f.name]), body[f.name]
        else:
            problem, value = _check_number(f, body[f.name])
        if problem:
            errors[f.name] = problem
        else:
            values[f.name] = value
    for f in FIELDS:
        if f.lower and f.name in values:
            values[f.name] = values[f.name].lower()
            if len(values[f.name]) > f.max_length:  # lower-casing can lengthen a few characters (e.g. U+0130)
                errors[f.name] = f"must be at most {f.max_length} characters"
    if errors:
        raise ValidationFailed(errors)
    return NewOrder(**values)
