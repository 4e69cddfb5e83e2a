"""Keep litdata off the network.

litdata 0.2.44 asks PyPI for a newer release whenever a ``StreamingDataset`` is made
(``litdata.helpers._get_newer_version``: an HTTP request with a 30 s timeout). The
toolkit never touches the network at run time, so both hooks answer "no newer version".
"""


def offline_litdata() -> None:
    """Disable litdata's version check (idempotent; call before making a StreamingDataset)."""
    import litdata.helpers
    import litdata.streaming.dataset as lds

    # private hooks on purpose: litdata offers no public switch for its version check
    litdata.helpers._get_newer_version = lambda *_a, **_k: None
    lds._check_version_and_prompt_upgrade = lambda *_a, **_k: None
