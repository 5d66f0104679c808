"""Offline experiment analysis: exposures (published storefronts) joined with what shoppers did next."""
