"""Media folders -> canonical bytes -> tokens -> litdata shards; tokenizer training; synthetic media."""
