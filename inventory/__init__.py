"""The inventory service: sessions, the catalog, and changes to carts."""
