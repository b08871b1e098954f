"""The web gateway's pure rooms: gateway URLs, and the rewriting of what a fetched page
links to (HTML, CSS, headers, cookies) so that navigation stays inside ``/browse/``.

The I/O (fetching a page under the proxy's rules, streaming it back) is `proxy.gateway`.
"""
