"""Validation of money amounts arriving from clients: exact decimals that fit NUMERIC(38, 9)."""

from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow

from app.errors import InvalidRequest

MAX_INTEGER_DIGITS = 38 - 9
# Every amount the ledger stores (an entry, a balance, an event's cost) is below this in magnitude.
MAX_AMOUNT = Decimal(10) ** MAX_INTEGER_DIGITS


def check_amount(value: Decimal, field: str, *, allow_negative: bool = False) -> Decimal:
    if not value.is_finite():
        raise InvalidRequest(f"`{field}` must be a finite number", param=field)
    if value < 0 and not allow_negative:
        raise InvalidRequest(f"`{field}` must not be negative", param=field)
    _, digits, exponent = value.as_tuple()
    if exponent < -9:
        raise InvalidRequest(f"`{field}` has more than 9 decimal places", param=field)
    if len(digits) + exponent > MAX_INTEGER_DIGITS:
        raise InvalidRequest(f"`{field}` is too large", param=field)
    return value


MONEY_PLACES = Decimal("0.000000001")
# Room for every NUMERIC(38, 9) amount; the default context (28 digits) cannot quantize one with more
# than 19 integer digits, which accounts may hold (up to MAX_INTEGER_DIGITS).
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])


def money(value: Decimal) -> str:
    """JSON form of an amount: fixed-point with 9 places ("0.000000000", never "0E-9")."""
    return format(value.quantize(MONEY_PLACES, context=_CONTEXT), "f")


# Sums and differences of amounts. An amount has up to 38 digits, more than the default context's 28,
# which would round a balance of 10^19 credits or more without a word; this context has room for any
# sum of amounts and refuses to round.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation, Overflow])


def add(a: Decimal, b: Decimal) -> Decimal:
    return _EXACT.add(a, b)


def subtract(a: Decimal, b: Decimal) -> Decimal:
    return _EXACT.subtract(a, b)
