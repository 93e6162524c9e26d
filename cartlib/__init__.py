"""cartlib: the shared library of the storefront services, in two layers.

* `cartlib.store`: everything that talks to Redis (carts, catalog, checkout, the cache, the
  key layout, the Lua scripts, the domain errors, the Redis metrics). No HTTP: it imports
  no FastAPI, Starlette or uvicorn, and its errors carry no status code.
* `cartlib.web`: the FastAPI side every service is built from (`create_app`, `Endpoints`,
  middleware, dependencies, API models, and the one mapping of domain errors to HTTP).
* `cartlib.settings`: the one `Settings` of a process, read by both.

`web` imports `store`, never the reverse; both import `settings`, which imports neither
(`make lint` checks it: the import-linter contracts in pyproject.toml). Services import the
names each package exports, never their modules.
"""
