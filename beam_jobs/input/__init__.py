"""Reading and screening input: which files and pieces to read, the format readers, rows that fail to parse."""
