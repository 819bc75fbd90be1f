"""SQL migrations of the collector store, applied in file-name order (NNNN_name.sql)."""
