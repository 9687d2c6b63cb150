from ._base import CurveModel, pass_at_k
from .passk import BetaBinomialPassAtK, beta_binomial_pass_at_k
from .parametric import AccuracyCurve, ExpPowerLaw, LogLogRegression, PowerLawWithFloor
from .majority import DirichletMajorityModel, calibrate_prior, as_majority_data
