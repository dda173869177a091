"""The HTTP face (admin listener): health, and the routers of other concerns.

Any module in this package that defines `router` (a FastAPI APIRouter) and optionally
`setup(app, runtime)` is mounted by `create_app`; concerns add endpoints by adding a module.
"""
