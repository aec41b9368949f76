"""Attribution matrices: regression (Eq. 8) and the result type with named axes."""

from ddm.attribution.fit import fit_attribution
from ddm.attribution.matrix import AttributionMatrix, GroupInfluence
from ddm.attribution.regression import WeightedLeastSquares

__all__ = ["AttributionMatrix", "GroupInfluence", "WeightedLeastSquares", "fit_attribution"]
