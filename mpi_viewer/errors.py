"""Errors that reach the user as one clear line.

Every error a user can cause (a bad file, a bad value, too few fiducials) is an
:class:`InputError`. The command line turns it into exit status 2 and one line
on stderr; the napari widgets turn it into a notification. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class MPIViewerError(Exception):
    """Base class of the errors mpi-viewer reports to the user."""


class InputError(MPIViewerError, ValueError):
    """Bad input: a file, a value or a combination the program cannot use.

    The message names the file or value and what is wrong with it, in one line.
    """


class CancelledError(MPIViewerError):
    """Long work stopped because the user asked it to."""


class OutputError(InputError, OSError):
    """An output that cannot be written (a full or read-only folder, a folder in the
    way, a name too long): one line naming the file; nothing is left behind.

    Also an :class:`OSError`, so callers that catch file-system errors keep working.
    """
