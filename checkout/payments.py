"""Payment processors. `TestProcessor` is the built-in one, in the style of Stripe's test
tokens; a real provider implements `cartlib.store.PaymentProcessor` the same way."""

from __future__ import annotations

from collections import OrderedDict

from cartlib.store import PaymentResult

APPROVED_TOKEN = "tok_visa"
DECLINED_TOKEN = "tok_declined"


class TestProcessor:
    """Approves `tok_visa`, declines `tok_declined` and any token it does not know.

    Like a real provider (Stripe's idempotency keys), it deduplicates on `reference`, as the
    `PaymentProcessor` contract says: a reference charged before gets its first result back,
    whatever token or amount comes with it, and is never charged again. Checkout relies on
    this when a retry finishes a checkout that was cut off after its charge. It remembers the
    last `remember` references, in this process only (a real provider remembers them for
    every client, for a day or more). `charges` and `charged_cents` count what it approved.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, remember: int = 100_000) -> None:
        self._results: OrderedDict[str, PaymentResult] = OrderedDict()
        self._remember = remember
        self.charges = 0
        self.charged_cents = 0

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        result = self._results.get(reference)
        if result is not None:
            return result
        if token == APPROVED_TOKEN:
            result = PaymentResult(approved=True)
            self.charges += 1
            self.charged_cents += amount_cents
        elif token == DECLINED_TOKEN:
            result = PaymentResult(approved=False, reason="card declined")
        else:
            result = PaymentResult(approved=False, reason="unknown payment token")
        self._results[reference] = result
        if len(self._results) > self._remember:
            self._results.popitem(last=False)
        return result
