"""Operations on a session: communicate, the DAG Builder, flow and flow_stream.

Not built yet: these arrive with the session and workflow work (see the project's issues).
"""

__all__: list[str] = []
