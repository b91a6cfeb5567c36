"""One module per CLI command; `hifilight.cli` dispatches to them."""
