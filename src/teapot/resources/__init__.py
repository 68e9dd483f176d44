"""One module per resource: its schema and its state machine. Pure: no I/O, no database, no drivers."""
