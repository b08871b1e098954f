"""The pages the proxy serves itself, rendered to bytes: the info, block and error pages
(`pages`), the PAC/WPAD file (`pac`), the status page (`statuspage`) and the Prometheus
metrics (`metrics`).

Pure renderers: they take figures and settings and return text. They may import `stats`,
`errors` and the package version, never `proxy/` (which sends what they render), trio,
h11 or socket.
"""
