"""The foundation every layer of vaezoo stands on, free of torch: errors, parameter schemas, command-line
parsing, files written atomically, timestamps and tables."""
