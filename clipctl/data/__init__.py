"""Data jobs: build webdataset shards from URL lists (img2dataset), pack local images, inspect shards, and
generate the synthetic shapes dataset used by the demo."""
