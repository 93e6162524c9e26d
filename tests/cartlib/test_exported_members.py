import types

import cartlib


def test_all_lists_exactly_the_public_names_sorted() -> None:
    public = {
        name
        for name, value in vars(cartlib).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert cartlib.__all__ == sorted(cartlib.__all__)
    assert set(cartlib.__all__) == public
