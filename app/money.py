"""Money: validation of amounts arriving from clients (exact decimals that fit NUMERIC(38, 9)), their JSON
form, and the decimal contexts of all money and price arithmetic."""

from decimal import MAX_PREC, ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow

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

# The decimal contexts of all money and price arithmetic, defined here once. The service's own, so a
# caller's context can never change an amount. 60 digits: room for every NUMERIC(38, 9) amount (the
# default 28 cannot quantize one with more than 19 integer digits, nor add two without rounding a balance
# of 10^19 credits) and for tokens x rate x margin x credits_per_usd (pricing.MAX_TOKENS keeps it there).
_SIGNALS = [InvalidOperation, DivisionByZero, Overflow]


def exact_context(digits: int) -> Context:
    """A context that refuses to round: a result that would need it raises Inexact, so a result is exact."""
    return Context(prec=digits, rounding=ROUND_HALF_EVEN, traps=[*_SIGNALS, Inexact])


EXACT = exact_context(60)
# Rounds half-even, where the one rounding rule applies (an amount to MONEY_PLACES).
ROUNDING = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=_SIGNALS)
# Ratios of stored sums in reports (a margin of 10^40 over credits of 10^-9 is 51 digits before its 2
# places); Python's default 28 digits answered such a report with a 500.
RATIOS = Context(prec=100, rounding=ROUND_HALF_EVEN, traps=_SIGNALS)
# Sums of any number of stored amounts in reports, exact whatever their count.
SUMS = exact_context(MAX_PREC)


def money(value: Decimal) -> str:
    """JSON form of an amount: fixed-point with 9 places ("0.000000000", never "0E-9")."""
    return format(value.quantize(MONEY_PLACES, context=ROUNDING), "f")


def add(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.add(a, b)


def subtract(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.subtract(a, b)
