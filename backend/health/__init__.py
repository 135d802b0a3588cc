"""The data doctor: a project's health report, and fixes made where problems are found."""
