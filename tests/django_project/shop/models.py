from django.db import models


class Order(models.Model):
    number = models.CharField(max_length=40, unique=True)
    processed = models.BooleanField(default=False)


class RunLog(models.Model):
    """One line per task run, in the order the runs happened (id order)."""

    label = models.CharField(max_length=200)
