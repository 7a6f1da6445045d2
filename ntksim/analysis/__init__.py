"""What turns kernels into answers: the concentration metrics, fitted power-law rates, and the
helpers every study's figures share."""
