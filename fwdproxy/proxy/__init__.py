"""The proxy itself: one client connection from accept to the last byte relayed.

Owns the connection and its request loop (`connection`), what all connections share
(`context`), admission and authentication (`admission`), the proxy's own pages as a
request sees them (`ownpages`), the one error handler (`replies`), the HTTP/1.1 binding
(`h11_stream`, with the strict framing checks of `framing`), descriptor I/O (`fdio`),
plain-HTTP forwarding (`forward`), CONNECT tunnels (`tunnel`), origin connections and
their pool (`upstream`), a parent proxy (`parent`), DNS (`resolver`), the PROXY protocol
(`proxyproto`), request targets (`target`) and hop-by-hop header rules (`headers`).

May import `policy/` (decisions), `site/` (pages to send) and the top-level rooms below the
server (errors, config, accesslog, auth, stats); never `server`, `workers`, `check` or
`cli`. `framing`, `target` and `headers` are pure (no trio, h11 or socket).
"""
