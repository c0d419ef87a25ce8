"""streams.yaml: the models, loading with file:line:col problems, watching for saved edits, editing, reload plans.

``models`` the schema; ``load`` reading and file checks; ``problems`` located errors and cross references;
``watch`` a saved file becomes a new config; ``edit`` exact text edits of one zone (the rest byte for byte);
``reload`` what a new config changes in a running engine; ``notify``, ``retention``, ``web``, ``cluster``,
``broadcasts`` the service sections.
"""

from monitor.config.load import LoadedConfig, check_files, load_config, load_or_report
from monitor.config.models import CameraConfig, ClipConfig, Config, InputsConfig, ZoneConfig, file_path
from monitor.config.problems import ConfigError, ConfigProblem, camera_source_problem, cross_reference_problems

__all__ = [
    "CameraConfig",
    "ClipConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "InputsConfig",
    "LoadedConfig",
    "ZoneConfig",
    "camera_source_problem",
    "check_files",
    "cross_reference_problems",
    "file_path",
    "load_config",
    "load_or_report",
]
