# What `kind: ec2` launches from: a launch template with the secure settings stated (so the hook's
# defaults are not needed: IMDSv2 with one hop, an encrypted root volume, terminate on shutdown)
# and a security group that lets only the runner hosts reach sshd. No user data and no network
# interfaces: the hook sends its own user data (per-job host and client keys), subnet and tags
# with every RunInstances, and a template network interface would conflict with its subnet.

data "aws_ami" "image" {
  owners = var.image_owners
  filter {
    name   = "image-id"
    values = [var.image_id]
  }
}

locals {
  tags = merge(var.tags, { "remote-container-hooks:template" = var.name })
}

resource "aws_security_group" "instance" {
  name_prefix = "${var.name}-"
  description = "remote-container-hooks per-job instances ${var.name}: SSH from the runner hosts only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-instance" })

  lifecycle {
    create_before_destroy = true
    precondition {
      condition     = length(var.ingress_security_group_ids) + length(var.ingress_cidr_blocks) > 0
      error_message = "Give the runner hosts' security groups (ingress_security_group_ids) or CIDR blocks (ingress_cidr_blocks): nothing else may reach sshd."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "ssh_from_group" {
  #checkov:skip=CKV_AWS_24: the source is a runner host security group (referenced_security_group_id), no CIDR at all; the check reads only cidr_ipv4/cidr_ipv6/source_security_group_id and so takes this rule for one open to the world
  for_each                     = toset(var.ingress_security_group_ids)
  security_group_id            = aws_security_group.instance.id
  description                  = "SSH from runner hosts (security group)"
  ip_protocol                  = "tcp"
  from_port                    = var.ssh_port
  to_port                      = var.ssh_port
  referenced_security_group_id = each.value

  tags = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "ssh_from_cidr" {
  for_each          = toset(var.ingress_cidr_blocks)
  security_group_id = aws_security_group.instance.id
  description       = "SSH from runner hosts (CIDR)"
  ip_protocol       = "tcp"
  from_port         = var.ssh_port
  to_port           = var.ssh_port
  cidr_ipv4         = each.value

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "instance" {
  for_each = { for i, r in flatten([
    for rule in var.egress_rules : [for c in rule.cidr_blocks : merge(rule, { cidr = c })]
  ]) : "${r.protocol}-${r.from_port}-${r.to_port}-${r.cidr}" => r }
  security_group_id = aws_security_group.instance.id
  description       = each.value.description
  ip_protocol       = each.value.protocol
  from_port         = each.value.protocol == "-1" ? null : each.value.from_port
  to_port           = each.value.protocol == "-1" ? null : each.value.to_port
  cidr_ipv4         = each.value.cidr

  tags = local.tags
}

resource "aws_launch_template" "instance" {
  name_prefix                          = "${var.name}-"
  description                          = "remote-container-hooks per-job instances ${var.name}"
  image_id                             = var.image_id
  instance_type                        = var.instance_type
  update_default_version               = true
  ebs_optimized                        = true
  instance_initiated_shutdown_behavior = "terminate"
  vpc_security_group_ids               = [aws_security_group.instance.id]

  dynamic "iam_instance_profile" {
    for_each = var.instance_profile_arn == null ? [] : [var.instance_profile_arn]
    content {
      arn = iam_instance_profile.value
    }
  }

  # Stated here, so the hook adds nothing: IMDSv2 only, one hop (job containers cannot reach it).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  # The AMI's own root device, so this sizes and encrypts the root volume instead of adding one.
  block_device_mappings {
    device_name = data.aws_ami.image.root_device_name
    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size_gib
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = var.detailed_monitoring
  }

  tags = local.tags
}
