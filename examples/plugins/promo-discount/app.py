"""promo-discount: a plugwatch example plugin, written in Python.

Hook `order.pricing` (a filter): validates the order, computes `subtotal`, applies the order's
`promo_code` from a table of promotions, and returns the order plus `subtotal`, `discounts` and
`total`. A code that is unknown or does not apply leaves the total unchanged and adds
`promo_rejected`. Every other hook gets its input back unchanged.

Amounts are integers in the currency's minor unit (KRW has none, so 12500 means 12,500 won).

Built with componentize-py; see ../README.md.
"""

import json

import wit_world
from wit_world.imports import host
from wit_world.imports.host import Level
from componentize_py_types import Err

# Used when the operator has not set the `promo_codes` config key. Each rule has exactly one of
# `percent` (whole percent of the subtotal) or `fixed` (an amount), and optionally
# `max_discount` (a cap), `min_subtotal` (a threshold) and `tiers` (customer tiers it is for).
DEFAULT_PROMO_CODES = {
    "WELCOME10": {"percent": 10, "max_discount": 5000},
    "FREESHIP": {"fixed": 3000, "min_subtotal": 15000},
    "GOLD5": {"percent": 5, "tiers": ["gold"]},
}


class WitWorld(wit_world.WitWorld):
    def handle(self, hook: str, input: bytes) -> bytes:
        if hook != "order.pricing":
            return input
        order = parse_order(input)
        price_order(order, load_promo_codes())
        return json.dumps(order, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def is_int(value) -> bool:
    # JSON `true` parses as a Python bool, which is an int subclass: refuse it explicitly.
    return isinstance(value, int) and not isinstance(value, bool)


def parse_order(data: bytes) -> dict:
    """Parse and validate the order; raise Err naming the first bad field."""
    try:
        order = json.loads(data.decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise Err(f"input is not valid JSON: {e}")
    if not isinstance(order, dict):
        raise Err("input must be a JSON object (an order)")

    items = order.get("items")
    if not isinstance(items, list) or not items:
        raise Err("items must be a non-empty array")
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            raise Err(f"{where} must be an object")
        if not isinstance(item.get("sku"), str) or not item["sku"]:
            raise Err(f"{where}.sku must be a non-empty string")
        if not is_int(item.get("quantity")) or item["quantity"] <= 0:
            raise Err(f"{where}.quantity must be a positive integer")
        if not is_int(item.get("unit_price")) or item["unit_price"] < 0:
            raise Err(f"{where}.unit_price must be a non-negative integer")

    for key in ("promo_code", "customer_tier"):
        if order.get(key) is not None and not isinstance(order[key], str):
            raise Err(f"{key} must be a string when present")
    return order


def load_promo_codes() -> dict:
    """The promotion table: host config `promo_codes` (a JSON object), else the default."""
    raw = host.config("promo_codes")
    if raw is None:
        return DEFAULT_PROMO_CODES
    try:
        table = json.loads(raw)
    except ValueError as e:
        raise Err(f"config promo_codes is not valid JSON: {e}")
    if not isinstance(table, dict):
        raise Err("config promo_codes must be a JSON object of code -> rule")
    for code, rule in table.items():
        problem = rule_problem(rule)
        if problem:
            raise Err(f"config promo_codes[{json.dumps(code)}] is invalid: {problem}")
    # Codes are matched case-insensitively.
    return {code.strip().upper(): rule for code, rule in table.items()}


def rule_problem(rule) -> str | None:
    """Why `rule` is not a valid promotion rule, or None if it is."""
    if not isinstance(rule, dict):
        return "a rule must be an object"
    if ("percent" in rule) == ("fixed" in rule):
        return "a rule needs exactly one of percent or fixed"
    if "percent" in rule and not (is_int(rule["percent"]) and 0 < rule["percent"] <= 100):
        return "percent must be an integer from 1 to 100"
    for key in ("fixed", "max_discount", "min_subtotal"):
        if key in rule and not (is_int(rule[key]) and rule[key] >= 0):
            return f"{key} must be a non-negative integer"
    tiers = rule.get("tiers")
    if tiers is not None and not (isinstance(tiers, list) and all(isinstance(t, str) for t in tiers)):
        return "tiers must be an array of strings"
    return None


def price_order(order: dict, promo_codes: dict) -> None:
    """Add subtotal, discounts, total (and promo_rejected when the code does not apply)."""
    subtotal = sum(item["quantity"] * item["unit_price"] for item in order["items"])
    discounts, rejected = [], None
    code = (order.get("promo_code") or "").strip().upper()
    if code:
        amount, rejected = evaluate(code, promo_codes.get(code), subtotal, order.get("customer_tier"))
        if rejected is None:
            discounts.append({"code": code, "amount": amount})
            host.log(Level.INFO, f"order {order.get('order_id')}: promo {code} takes {amount} off {subtotal}")
        else:
            host.log(Level.WARN, f"order {order.get('order_id')}: promo {code} rejected: {rejected}")

    order["subtotal"] = subtotal
    order["discounts"] = discounts
    order["total"] = subtotal - sum(d["amount"] for d in discounts)
    order.pop("promo_rejected", None)  # from an earlier pricing of the same order
    if rejected is not None:
        order["promo_rejected"] = rejected


def evaluate(code: str, rule: dict | None, subtotal: int, tier: str | None):
    """Return (discount amount, None) if the code applies, else (0, reason)."""
    if rule is None:
        return 0, f"unknown promo code {code}"
    if subtotal < rule.get("min_subtotal", 0):
        return 0, f"promo code {code} needs a subtotal of at least {rule['min_subtotal']} (subtotal is {subtotal})"
    if rule.get("tiers") is not None and tier not in rule["tiers"]:
        return 0, f"promo code {code} is only for customer tiers {', '.join(rule['tiers'])} (tier is {tier or 'none'})"
    if "percent" in rule:
        amount = subtotal * rule["percent"] // 100  # integer arithmetic: rounds the discount down
    else:
        amount = rule["fixed"]
    if "max_discount" in rule:
        amount = min(amount, rule["max_discount"])
    amount = min(amount, subtotal)  # never discount below zero
    if amount == 0:
        return 0, f"promo code {code} gives no discount on a subtotal of {subtotal}"
    return amount, None
