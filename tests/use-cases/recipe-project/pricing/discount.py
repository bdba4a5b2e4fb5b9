"""Discounts and totals, in integer cents (never floats)."""


def apply_discount(cents, percent):
    """The price after a discount of `percent` per cent, rounded down to a whole cent."""
    if not 0 <= percent <= 100:
        raise ValueError(f"discount must be 0..100 per cent, got {percent}")
    return cents * percent // 100


def total(lines):
    """The sum of quantity * unit price over (quantity, cents) lines."""
    return sum(quantity * cents for quantity, cents in lines)
