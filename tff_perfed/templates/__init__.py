"""Process types beside TFF's `tff.learning.templates`.

* `client_state_process`: `ClientStateLearningProcess`, a learning process
  whose clients keep state across rounds (`ClientStateProcessOutput`), and
  `compose_client_state_process`, its composer from TFF's parts.
"""

# Owns TFF's default context before TFF is used (tff_perfed.runtime).
from tff_perfed import runtime as _runtime  # pylint: disable=unused-import
from tff_perfed.templates.client_state_process import ClientStateLearningProcess
from tff_perfed.templates.client_state_process import ClientStateProcessOutput
from tff_perfed.templates.client_state_process import compose_client_state_process
