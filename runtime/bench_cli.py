"""`homeostat bench ...` commands: benchmarks whose figures go in the docs."""

import typer

from runtime import sim_cli
from runtime.audit import bench as audit_bench
from runtime.detection import bench as detection_bench

app = typer.Typer(help="Benchmarks (detection, audit, ...).", no_args_is_help=True)
audit_bench.register(app)
detection_bench.register(app)
sim_cli.register_bench(app)
