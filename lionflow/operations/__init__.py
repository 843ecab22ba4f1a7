"""Operations on a session: communicate (one turn); the DAG Builder, flow and flow_stream follow."""

from lionflow.operations.communicate import Turn, communicate

__all__ = ["Turn", "communicate"]
