"""tdkit: release, grade and give feedback on the TD "CNN pour la classification d'images"."""

__version__ = "0.1.0"
