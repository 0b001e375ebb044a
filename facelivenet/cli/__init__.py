"""The ``facelivenet`` command line: a thin Click group; each command lives in a module.

Every command maps its options to a library call; library errors
(:class:`facelivenet.errors.FaceLiveNetError`) become a one-line message and exit 2.
"""

from __future__ import annotations

import click

from facelivenet import __version__
from facelivenet.cli.common import FaceLiveNetGroup
from facelivenet.cli.auth_cmds import challenge, enroll, gallery
from facelivenet.cli.demo_cmds import demo
from facelivenet.cli.detect_cmds import align
from facelivenet.cli.eval_cmds import (
    evaluate_auth_cmd, evaluate_expression_cmd, evaluate_verification_cmd, make_auth_protocol_cmd,
    plot_embeddings_cmd, calibrate_cmd, calibrate_neutral_cmd,
)
from facelivenet.cli.export_cmds import export_cmd
from facelivenet.cli.joint_cmds import manifest_faces, prepare_joint, teacher_cache, train_joint_cmd
from facelivenet.cli.model_cmds import analyze, compare, create_model, identify, info
from facelivenet.cli.serve_cmds import serve
from facelivenet.cli.train_cmds import train_expression_cmd, train_multitask_cmd, train_verification_cmd
from facelivenet.cli.verify_cmds import realtime, verify_video


@click.group(cls=FaceLiveNetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facelivenet")
def cli():
    """Face authentication: face verification fused with expression challenge-response liveness.

    Results go to stdout (--json for JSON); progress and logs go to stderr. Exit codes:
    0 success/accept, 1 reject, 2 error.
    """


for _command in (
    demo, info, analyze, compare, identify, create_model, align,
    train_verification_cmd, train_expression_cmd, train_multitask_cmd, prepare_joint, teacher_cache, train_joint_cmd,
    manifest_faces,
    challenge, enroll, gallery, verify_video, realtime, export_cmd,
    evaluate_verification_cmd, evaluate_expression_cmd, make_auth_protocol_cmd, evaluate_auth_cmd,
    plot_embeddings_cmd, calibrate_cmd, calibrate_neutral_cmd, serve,
):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="facelivenet")
