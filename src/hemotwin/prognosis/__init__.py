"""Prognostic stratification: karyotypes, mutations, ELN 2022/2024, IPSS-R, IPSS-M, survival models."""
