"""The data stages: a Wikipedia dump to clean, validated plain text and token files.

- ingest: ``sources`` (which dump), ``wikixml`` reading it through ``bz2stream``, ``lbzip2``
  and ``readahead``, ``wikitext`` rendering pages to text in ``render``'s workers;
- clean: ``assess`` (the workers) with ``filters`` and ``ngrams`` (quality rules),
  ``wordarrays`` and ``stopwords``, and ``dedup``;
- validate: Great Expectations suites over both corpora;
- tokenize (``tokenization``): the BPE tokenizer and the ``tokenbin`` token files;
- shared: ``documents`` (the record and its Parquet shards), ``tokenizer_file`` (the
  tokenizer the later stages encode with), and ``labelled`` text for the classifier;
- ``params``: the sections of these stages, and what they read of the assembled params.

May import :mod:`components.core` only.
"""
