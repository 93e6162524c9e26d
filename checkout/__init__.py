"""The checkout service: orders from carts, with payment."""
