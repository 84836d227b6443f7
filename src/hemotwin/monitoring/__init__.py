"""Disease monitoring: patient timelines, ELN 2022 response and relapse, MRD kinetics, alerts."""
