"""The firm simulator: a seeded model of a professional-services firm that yields the
events its middleware would send. Pure: it builds event dicts and never delivers them;
`manage.py simulate` does the delivery."""
from simulator.firm import SIZES, FirmSimulator, Size

__all__ = ["SIZES", "FirmSimulator", "Size"]
