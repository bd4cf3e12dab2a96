"""How static files are stored and named: compressed (gzip and Brotli) and named by their
content hash at collectstatic, so WhiteNoise serves them with far-future caching."""
from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticFiles(CompressedManifestStaticFilesStorage):
    """CompressedManifestStaticFilesStorage that links hashed names even with DEBUG on (the
    demo runs with it, and should load as production does), and plain names for files the
    manifest does not list (before any collectstatic: tests, a fresh checkout), which
    WhiteNoise then serves from the finders."""

    manifest_strict = False

    def url(self, name: str | None, force: bool = False) -> str:
        """The hashed name's URL, also under DEBUG."""
        return super().url(name, force=True)

    def stored_name(self, name: str) -> str:
        """The hashed name, or the name itself for a file the manifest lacks."""
        try:
            return super().stored_name(name)
        except ValueError:  # not collected: the name as it is
            return name
