"""Analyses of a zoo: phase diagrams, critical delays and scaling exponents, and dynamics diagnostics.

- :mod:`zoo.analysis.outcomes`: outcome fractions per (lr, delay) cell, families and pooled panels,
  psd_ratio histograms, the exponent-fit result type (metadata only).
- :mod:`zoo.analysis.phases`: the boundary fits' entry points (``scaling_exponent``, ``critical_delays``,
  ``slow_point_boundaries``, one ``method=`` argument over :data:`METHODS`) and the two-step robust fit
  (``method="package"``).
- :mod:`zoo.analysis.joint`: the joint likelihood fit over all cells (``method="joint"``, the default), seed
  bootstrap and profile intervals, per-rate boundaries with their own intervals.
- :mod:`zoo.analysis.paper`: the authors' own figure procedures (``method="paper"``), for their numbers.
- :mod:`zoo.analysis.calibration`: synthetic zoos from a known phase diagram (``Truth``, ``Design``,
  ``synthetic_zoo``), the calibration of every method (``calibrate``, ``calibration_table``) and the power
  planner (``power``).
- :mod:`zoo.analysis.theory`: the paper's critical-learning-rate curves and ms <-> step conversions.
- :mod:`zoo.analysis.dynamics`: the dynamics diagnostics per network (``dyn_state``, ``dyn_mechanism``),
  their table stored as ``diagnostics/networks.parquet`` and its comparison with the reference labels;
  built on :mod:`zoo.analysis.fixed_points` (fixed/slow points, Jacobian spectra),
  :mod:`zoo.analysis.limit_cycles` (autonomous trajectories, limit cycles) and
  :mod:`zoo.analysis.diagnostics_config` (the settings).
"""

from ..task import DT_MS, ms_to_steps, steps_to_ms
from .calibration import (
    Design,
    Truth,
    calibrate,
    calibration_table,
    design_from_configs,
    paper_design,
    power,
    synthetic_zoo,
    validation_design,
)
from .diagnostics_config import DEFAULT_CONFIG, DiagnosticsConfig, torch_threads, with_config
from .dynamics import (
    DIAGNOSTICS_VERSION,
    DYN_MECHANISM,
    SUMMARY_COLUMNS,
    NetworkDiagnosis,
    diagnose_network,
    diagnose_stacked,
    diagnose_zoo,
    mechanism_agreement,
    mechanism_confusion,
    read_diagnostics,
    write_diagnostics,
)
from .fixed_points import FixedPoints, find_fixed_points, jacobian, speed, step_map
from .joint import joint_exponent
from .limit_cycles import DYN_STATES, analyse_tail, autonomous_trajectories
from .outcomes import (
    CI_METHODS,
    DEFAULT_METHOD,
    METHODS,
    PANELS,
    ScalingFit,
    family_rows,
    loglog_regression,
    panels_of,
    phase_diagram,
    psd_ratio_histogram,
)
from .paper import (
    PAPER_SETTINGS,
    PSD_BIN_EDGES,
    PaperSettings,
    PsdRatioFits,
    paper_exponent,
    paper_loss_curves,
    paper_psd_ratio_fits,
    paper_rates,
)
from .phases import (
    FitError,
    critical_delays,
    fit_critical_delay,
    fit_slow_point_midpoint,
    logistic_curve,
    onset_curve,
    scaling_exponent,
    slow_point_boundaries,
)
from .theory import (
    RESPONSE_STEPS,
    THEORY_BETA,
    critical_delay_steps,
    critical_lr,
    critical_lr_tr_equals_t,
    eta_c_limit_cycle,
    eta_c_slow_point,
)

__all__ = [
    "CI_METHODS", "DEFAULT_METHOD", "Design", "Truth", "calibrate", "calibration_table", "design_from_configs",
    "joint_exponent", "paper_design", "power", "synthetic_zoo", "validation_design",
    "METHODS", "PANELS", "PAPER_SETTINGS", "PSD_BIN_EDGES", "PaperSettings", "PsdRatioFits", "family_rows",
    "panels_of", "paper_exponent", "paper_loss_curves", "paper_psd_ratio_fits", "paper_rates", "DEFAULT_CONFIG", "DIAGNOSTICS_VERSION", "DT_MS", "DYN_MECHANISM", "DYN_STATES", "RESPONSE_STEPS",
    "SUMMARY_COLUMNS", "THEORY_BETA", "DiagnosticsConfig", "FitError", "FixedPoints", "NetworkDiagnosis",
    "ScalingFit", "analyse_tail", "autonomous_trajectories", "critical_delay_steps", "critical_delays",
    "critical_lr", "critical_lr_tr_equals_t", "diagnose_network", "diagnose_stacked", "diagnose_zoo", "eta_c_limit_cycle",
    "eta_c_slow_point", "find_fixed_points", "fit_critical_delay", "fit_slow_point_midpoint", "jacobian",
    "logistic_curve", "loglog_regression", "mechanism_agreement", "mechanism_confusion", "ms_to_steps",
    "onset_curve", "phase_diagram", "psd_ratio_histogram", "read_diagnostics", "scaling_exponent",
    "slow_point_boundaries", "speed", "step_map", "steps_to_ms", "torch_threads", "with_config",
    "write_diagnostics",
]
