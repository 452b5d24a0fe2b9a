"""Results: the report's published numbers, tables, and the HTML report."""
