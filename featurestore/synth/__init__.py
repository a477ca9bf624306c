"""A built-in corpus of synthetic music: labelled clips in eight genre-like styles.

Nobody can download MTAT, GTZAN or FMA everywhere, so the demo and the tests generate their
own data: deterministic from a seed, different the way genres differ (tempo and rhythm,
timbre, harmony, texture), varied per clip (key, tempo, mix, noise, loudness) so a model has
to listen rather than read the level meter, and written as real files in the GTZAN layout.
"""

from featurestore.synth.corpus import ClipFile, CorpusConfig, CorpusReport, generate_corpus, write_clip
from featurestore.synth.render import STYLES, render_clip

__all__ = ["STYLES", "ClipFile", "CorpusConfig", "CorpusReport", "generate_corpus", "render_clip", "write_clip"]
