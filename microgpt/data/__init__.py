"""Data, from a JSONL file to token ids, one step per module:

    records.py      the schema: record types, their fields, check_record()
    templates.py    record -> training text, and the chat prompt built from the same templates
    dataset.py      stream a file line by line: Document, validate_dataset(), load_documents()
    tokenizer.py    build_tokenizer(): cl100k_base BPE or characters, with a lossless byte fallback
    go_tokenizer.py the original Go project's vocabularies, as its JSON checkpoints store them
    token_cache.py  tokenized datasets cached on disk, keyed by dataset hash + tokenizer settings
    download.py     resumable, sha256-checked download of public datasets (Dolly)
    bench_tokenize.py   times build_tokenizer + encode_batch on 15,000 Dolly-sized records

The format and every template are documented with examples in datasets/README.md.
"""
