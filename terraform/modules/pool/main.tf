# A pool of warm VMs for the hook's `kind: ec2-pool`: an Auto Scaling group whose members boot
# with Docker and a hardened sshd, authorize only the pool key, and publish their own SSH host key
# as a write-once instance tag, the hook's only source of trust for that member.

data "aws_partition" "current" {}

data "aws_ssm_parameter" "al2023" {
  count = var.image_id == null ? 1 : 0
  name  = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}"
}

locals {
  host_key_tag = "remote-container-hooks:host-key"
  image_id     = var.image_id != null ? var.image_id : nonsensitive(data.aws_ssm_parameter.al2023[0].value)
  tags         = merge(var.tags, { "remote-container-hooks:pool" = var.name })

  # Included first by sshd_config, so these values win (sshd keeps the first value it reads).
  sshd_config = templatefile("${path.module}/templates/sshd_config.tftpl", {
    ssh_user = var.ssh_user
    ssh_port = var.ssh_port
  })

  member_setup = templatefile("${path.module}/templates/member_setup.sh.tftpl", {
    ssh_user          = var.ssh_user
    ssh_port          = var.ssh_port
    work_root         = var.work_root
    client_public_key = trimspace(var.client_public_key)
    host_key_tag      = local.host_key_tag
    sshd_config       = local.sshd_config
    ssm_agent         = var.ssm_agent
  })

  user_data = templatefile("${path.module}/templates/user_data.sh.tftpl", {
    member_setup = local.member_setup
  })
}

# ------------------------------------------------------------------ instance role

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "member" {
  name_prefix          = "${var.name}-member-"
  description          = "Members of the remote-container-hooks pool ${var.name}: may only publish their own SSH host key, once."
  assume_role_policy   = data.aws_iam_policy_document.assume_ec2.json
  max_session_duration = 3600
  tags                 = local.tags
}

locals {
  # The member tags itself (aws:ARN is the instance the request is about, ec2:SourceInstanceARN
  # the instance whose role credentials sign it), with this one key only, and only while the tag
  # is absent: a member taken over later cannot replace the key the hook pins.
  publish_host_key_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "PublishOwnHostKeyOnce"
        Effect   = "Allow"
        Action   = "ec2:CreateTags"
        Resource = "arn:${data.aws_partition.current.partition}:ec2:*:*:instance/*"
        Condition = {
          StringEquals                = { "aws:ARN" = "$${ec2:SourceInstanceARN}" }
          "ForAllValues:StringEquals" = { "aws:TagKeys" = [local.host_key_tag] }
          Null = {
            "aws:TagKeys"                           = "false"
            "aws:ResourceTag/${local.host_key_tag}" = "true"
          }
        }
      }
    ]
  }
}

resource "aws_iam_role_policy" "publish_host_key" {
  name   = "publish-own-host-key"
  role   = aws_iam_role.member.id
  policy = jsonencode(local.publish_host_key_policy)
}

resource "aws_iam_role_policy_attachment" "additional" {
  for_each   = toset(var.additional_instance_policy_arns)
  role       = aws_iam_role.member.name
  policy_arn = each.value
}

resource "aws_iam_instance_profile" "member" {
  name_prefix = "${var.name}-member-"
  role        = aws_iam_role.member.name
  tags        = local.tags
}

# ------------------------------------------------------------------ network

resource "aws_security_group" "member" {
  name_prefix = "${var.name}-member-"
  description = "remote-container-hooks pool ${var.name}: SSH from the runner hosts only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-member" })

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
  security_group_id            = aws_security_group.member.id
  description                  = "SSH from runner hosts (security group)"
  ip_protocol                  = "tcp"
  from_port                    = var.ssh_port
  to_port                      = var.ssh_port
  referenced_security_group_id = each.value

  tags = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "ssh_from_cidr" {
  for_each          = toset(var.ingress_cidr_blocks)
  security_group_id = aws_security_group.member.id
  description       = "SSH from runner hosts (CIDR)"
  ip_protocol       = "tcp"
  from_port         = var.ssh_port
  to_port           = var.ssh_port
  cidr_ipv4         = each.value

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "member" {
  for_each = { for i, r in flatten([
    for rule in var.egress_rules : [for c in rule.cidr_blocks : merge(rule, { cidr = c })]
  ]) : "${r.protocol}-${r.from_port}-${r.to_port}-${r.cidr}" => r }
  security_group_id = aws_security_group.member.id
  description       = each.value.description
  ip_protocol       = each.value.protocol
  from_port         = each.value.protocol == "-1" ? null : each.value.from_port
  to_port           = each.value.protocol == "-1" ? null : each.value.to_port
  cidr_ipv4         = each.value.cidr

  tags = local.tags
}

# ------------------------------------------------------------------ launch template

resource "aws_launch_template" "member" {
  name_prefix            = "${var.name}-"
  description            = "remote-container-hooks pool ${var.name}"
  image_id               = local.image_id
  instance_type          = var.instance_type
  update_default_version = true
  ebs_optimized          = true
  user_data              = base64encode(local.user_data)
  vpc_security_group_ids = [aws_security_group.member.id]

  iam_instance_profile {
    arn = aws_iam_instance_profile.member.arn
  }

  # IMDSv2 only, and one hop: a job container on a bridge network (one hop further) cannot reach
  # the instance's role credentials. A job that starts a container with --network host can: give
  # the role nothing a job may not have (additional_instance_policy_arns included).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = var.root_device_name
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

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-member" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = "${var.name}-member" })
  }

  # Cost tags on all three (the pool's name among them), so a bill splits by pool.
  tag_specifications {
    resource_type = "network-interface"
    tags          = merge(local.tags, { Name = "${var.name}-member" })
  }

  tags = local.tags
}

# ------------------------------------------------------------------ Auto Scaling group

resource "aws_autoscaling_group" "pool" {
  name                      = var.name
  vpc_zone_identifier       = var.subnet_ids
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  health_check_type         = "EC2"
  health_check_grace_period = var.instance_warmup_seconds
  default_instance_warmup   = var.instance_warmup_seconds
  # New members start unprotected: the hook protects a member from scale-in while a job holds it
  # (SetInstanceProtection), so a lowered desired capacity ends idle members only.
  protect_from_scale_in = false
  termination_policies  = ["OldestInstance", "Default"]
  # The hook ends a member with the desired capacity lowered (TerminateInstanceInAutoScalingGroup),
  # which can leave the zones uneven; AZRebalance would then end members in other zones to even
  # them out, the oldest first: likely one running a long job.
  suspended_processes = ["AZRebalance"]
  enabled_metrics     = ["GroupDesiredCapacity", "GroupInServiceInstances", "GroupPendingInstances", "GroupStandbyInstances", "GroupTerminatingInstances", "GroupTotalInstances", "WarmPoolWarmedCapacity"]

  launch_template {
    id      = aws_launch_template.member.id
    version = aws_launch_template.member.latest_version
  }

  # A new launch template version replaces the members. Stopped members the hook parked in
  # Standby are terminated rather than waited for.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage       = var.instance_refresh_min_healthy_percentage
      skip_matching                = true
      standby_instances            = "Terminate"
      scale_in_protected_instances = var.instance_refresh_protected_members
    }
  }

  dynamic "warm_pool" {
    for_each = var.warm_pool_enabled ? [1] : []
    content {
      pool_state                  = "Stopped"
      min_size                    = var.warm_pool_min_size
      max_group_prepared_capacity = var.warm_pool_max_group_prepared_capacity
      # A member that served jobs never goes back to the warm pool.
      instance_reuse_policy {
        reuse_on_scale_in = false
      }
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = "${var.name}-member" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # The hook scales out by SetDesiredCapacity; an apply must not undo it.
    ignore_changes = [desired_capacity]
    precondition {
      condition     = var.min_size <= var.desired_capacity && var.desired_capacity <= var.max_size
      error_message = "Need min_size <= desired_capacity <= max_size."
    }
  }
}
