"""`nmt serve`'s parts, each without the others' concerns (docs/serving in README.md):

    options   the defaults of every `nmt serve` option and the model-name rule (no imports:
              the CLI reads them without loading numpy or TensorFlow)
    api       TF Serving REST requests and responses: URL routes, JSON <-> arrays, errors
    batcher   groups concurrent text requests into one model run
    versions  one loaded export version; which version directories are complete
    server    `ModelServer`: the versions served (file-system polling, latest policy) and the
              API calls on them, without HTTP
    httpd     the HTTP server: connections, bodies, routing to `ModelServer`, the try page
    page      the HTML page at `/` (self-contained: no external scripts or styles)

`nmt.serve.serve` puts them together for `nmt serve`.
"""
