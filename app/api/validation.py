"""Validation of the POST /orders body: pure logic, one error message per bad field.

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
from dataclasses import dataclass

# The request contract, in one place: the routes check these and the OpenAPI document
# (app/api/openapi.py) publishes them, so the two cannot drift.
MAX_QUANTITY = 10_000
LIMITS = {"description": 500, "firstName": 100, "lastName": 100, "email": 254}
REQUIRED = ("description", "quantity", "email", "firstName", "lastName")
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"   # 1 to 255 printable ASCII characters
DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT = 50, 500  # ?limit= of the list routes
MAX_WAIT_MS = 60_000                          # ?wait= of GET /orders/<id> (API_MAX_WAIT_MS caps it further)
# The same patterns are published in the OpenAPI document (app/api/openapi.py), so a
# client or a fuzzer knows exactly what is accepted.  They avoid \s, whose meaning
# differs between Python and ECMA-262 (JSON Schema) regexes.  Text: no C0/C1 control
# characters (tab and newlines allowed in a description) and one visible character.
_TEXT = r"[^\x00-\x1f\x7f-\x9f]"
_MULTILINE = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_VISIBLE = r"[^\x00-\x20\x7f-\x9f]"
_EMAIL_PART = r"[^@\x00-\x20\x7f-\x9f]"
EMAIL_PATTERN = rf"^{_EMAIL_PART}{{1,64}}@{_EMAIL_PART}+\.{_EMAIL_PART}+$"
NAME_PATTERN = rf"^{_TEXT}*{_VISIBLE}{_TEXT}*$"
DESCRIPTION_PATTERN = rf"^{_MULTILINE}*{_VISIBLE}{_MULTILINE}*$"
_FULL = {name: re.compile(p[1:-1]) for name, p in (("email", EMAIL_PATTERN), ("name", NAME_PATTERN),
                                                    ("description", DESCRIPTION_PATTERN))}


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
    elif value == "":
        errors[name] = "must not be empty"
    elif len(value) > LIMITS[name]:
        errors[name] = f"must be at most {LIMITS[name]} characters"
    elif not _is_unicode(value):
        errors[name] = "must be valid Unicode (no lone surrogates)"
    elif name == "email":
        if not _FULL["email"].fullmatch(value):
            errors[name] = "must be an email address such as name@example.com"
    elif not _FULL["description" if name == "description" else "name"].fullmatch(value):
        errors[name] = "must contain a visible character and no control characters"


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


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
    if "quantity" in body:
        q = body["quantity"]
        if isinstance(q, float) and q.is_integer() and abs(q) < 2**53:
            q = int(q)  # JSON has one number type: 6.0 is the integer 6, as in JSON Schema
        if isinstance(q, bool) or not isinstance(q, int):
            errors["quantity"] = "must be an integer"
        elif not 1 <= q <= MAX_QUANTITY:
            errors["quantity"] = f"must be between 1 and {MAX_QUANTITY}"
    email = body["email"].lower() if "email" not in errors else ""
    if len(email) > LIMITS["email"]:  # lower-casing can lengthen a few characters (e.g. U+0130)
        errors["email"] = f"must be at most {LIMITS['email']} characters"
    if errors:
        raise ValidationFailed(errors)
    return NewOrder(description=body["description"], quantity=int(body["quantity"]),
                    email=email, firstName=body["firstName"], lastName=body["lastName"])
