"""The contracts of the components (encoders, decoders, priors, regularisers, noise, data) and the maths they
share: distributions, divergences, precision and optimisers."""
