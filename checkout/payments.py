"""Payment processors. `TestProcessor` is the built-in one, in the style of Stripe's test
tokens; a real provider implements `cartlib.PaymentProcessor` the same way."""

from __future__ import annotations

from cartlib import PaymentResult

APPROVED_TOKEN = "tok_visa"
DECLINED_TOKEN = "tok_declined"


class TestProcessor:
    """Approves `tok_visa`, declines `tok_declined` and any token it does not know."""

    __test__ = False  # not a pytest test class, despite the name

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        if token == APPROVED_TOKEN:
            return PaymentResult(approved=True)
        if token == DECLINED_TOKEN:
            return PaymentResult(approved=False, reason="card declined")
        return PaymentResult(approved=False, reason="unknown payment token")
