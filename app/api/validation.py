"""Validation of the POST /orders body: pure logic, one error message per bad field.

Decisions (README, "API"):
* unknown fields are rejected (a typo such as "quantitiy" must not pass silently);
* strings are stored verbatim (no trimming), must be valid Unicode without
  control characters (tab and newlines allowed in `description`), and are
  limited in characters as the columns are;
* email is lower-cased: it is the customer's identity, and case must not make
  two customers of one address;
* quantity is a JSON integer (not a boolean, float or string) from 1 to 10000.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_QUANTITY = 10_000
LIMITS = {"description": 500, "firstName": 100, "lastName": 100, "email": 254}
REQUIRED = ("description", "quantity", "email", "firstName", "lastName")
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class NewOrder:
    description: str
    quantity: int
    email: str
    firstName: str
    lastName: str


class ValidationFailed(ValueError):
    def __init__(self, fields: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def _check_string(name: str, value: object, errors: dict[str, str]) -> None:
    if not isinstance(value, str):
        errors[name] = "must be a string"
        return
    if value.strip() == "":
        errors[name] = "must not be empty"
        return
    if len(value) > LIMITS[name]:
        errors[name] = f"must be at most {LIMITS[name]} characters"
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        errors[name] = "must be valid Unicode (no lone surrogates)"
        return
    control = _CONTROL_MULTILINE if name == "description" else _CONTROL
    if control.search(value):
        errors[name] = "must not contain control characters"


def validate_order(body: object) -> NewOrder:
    """Return a NewOrder or raise ValidationFailed naming every bad field."""
    if not isinstance(body, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    for name in REQUIRED:
        if name not in body:
            errors[name] = "is required"
    for name in sorted(set(body) - set(REQUIRED)):
        errors[name] = "unknown field"
    for name in ("description", "email", "firstName", "lastName"):
        if name in body and name not in errors:
            _check_string(name, body[name], errors)
    if "email" in body and "email" not in errors and not _EMAIL.match(body["email"]):
        errors["email"] = "must be an email address such as name@example.com"
    if "quantity" in body:
        q = body["quantity"]
        if isinstance(q, bool) or not isinstance(q, int):
            errors["quantity"] = "must be an integer"
        elif not 1 <= q <= MAX_QUANTITY:
            errors["quantity"] = f"must be between 1 and {MAX_QUANTITY}"
    if errors:
        raise ValidationFailed(errors)
    return NewOrder(description=body["description"], quantity=body["quantity"],
                    email=body["email"].lower(), firstName=body["firstName"], lastName=body["lastName"])
