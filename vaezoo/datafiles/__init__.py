"""Reading data files, for data plugins: one module per file format or source, each checking what it reads and
naming the file and the problem when it is not what was expected."""
