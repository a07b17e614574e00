"""Tools for the kit's own developers (not the product): mutation testing."""
